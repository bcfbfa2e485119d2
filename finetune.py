"""Fine-tune a CLIP image tower with a classification head, through the same training loop as train.py.

    python finetune.py --checkpoint_path CKPT --dataset_type cifar --dataset cifar10 --data_dir data/cifar
    python finetune.py --checkpoint_path CKPT --dataset_type folder --data_dir data/PACS/photo --freeze_backbone \\
        optimizer.lr=1e-3 train.epochs=5
    python finetune.py --checkpoint_path CKPT --dataset_type folder --data_dir data/PACS/photo --objective cosine

--objective classification (default) minimises the cross-entropy of the head's logits; cosine trains the image
tower alone to draw images of one class together and push other classes apart (cosine similarity), and the
zero-shot head, kept fixed, classifies the test images.
    torchrun --nproc_per_node 4 finetune.py ...      (one process per GPU)

The configuration is trainer/train_config.yaml, then trainer/finetune_config.yaml, then the experiment YAML
(--config), then the flags and dotted overrides. Checkpoints, --resume auto|PATH, SIGTERM/Ctrl-C saving, the log
and the curves are the trainer's. At the end the fine-tuned classifier is tested; results go to the run folder.
"""
import sys

from dataloader.eval.eval_datasets import READERS
from jobs.finetuning import OBJECTIVES, FinetuneConfig, fine_tune, finetune_defaults
from jobs.resume import add_resume_flags
from utils.cli import SettingsParser, run_command

PARSER = SettingsParser(__doc__, FinetuneConfig, finetune_defaults())
PARSER.add_setting("--checkpoint_path", help="our checkpoint, an OpenAI or open_clip file, or a config name")
PARSER.add_setting("--dataset_type", "data.dataset_type", choices=sorted(READERS))
PARSER.add_setting("--data_dir", "data.data_dir", help="the training images")
PARSER.add_setting("--test_dir", "data.test_dir", help="the test images")
PARSER.add_setting("--dataset", "data.dataset", help="cifar10 | cifar100 for CIFAR; otherwise the name of the results")
PARSER.add_setting("--classnames", "data.classnames", help="file with one class name per line, in label order")
PARSER.add_setting("--head", choices=["zeroshot", "linear"], help="how the head starts (default zeroshot)")
PARSER.add_setting("--templates", help="templates of the zeroshot head: a set name, a file or one template")
PARSER.add_setting("--freeze_backbone", action="store_true", help="train the head alone")
PARSER.add_setting("--objective", choices=sorted(OBJECTIVES), help="classification (default) or cosine")
add_resume_flags(PARSER)
parse_args, load_config = PARSER.parse, PARSER.load


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_command(lambda: fine_tune(load_config(args), args.resume))


if __name__ == "__main__":
    sys.exit(main())
