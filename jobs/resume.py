"""The resume flags of every script that trains (train.py, finetune.py)."""
from utils.cli import SettingsParser


def add_resume_flags(parser: SettingsParser) -> None:
    parser.add_argument("--resume", help="'auto' (latest checkpoint of the run folder, if any) or a checkpoint path")
    parser.add_setting("--resume_allow_changes", "checkpoint.resume_allow_changes", action="store_true",
                       help="resume although settings that change the run differ from the checkpoint's")
