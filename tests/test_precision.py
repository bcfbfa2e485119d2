"""`auto` precision: native support decides where it can; on CPUs with native bf16 a measurement of the actual
work decides, is remembered, and leaves the run as it would have been at the chosen precision. Under torchrun,
rank 0 decides what every rank measures and for how long, since the steps timed contain collectives."""
import dataclasses
import json

import pytest
import torch
import torch.multiprocessing as mp

from gloo_ranks import free_port, gloo_process_group
from model import build_model, model_config_by_name
from utils import precision
from utils import precision_timing as timing
from utils.distributed import DistributedContext, all_reduce_sum
from utils.errors import UserError

# (amx_tile, avx512_bf16, oneDNN's own bf16 probe) as torch reports them on each CPU
CPUS = {
    "Sapphire Rapids": (True, True, True),
    "Zen 4": (False, True, True),
    "Skylake-SP": (False, False, True),  # AVX-512 without bf16: oneDNN says "supported", it is emulated
    "Zen 1 (AVX2)": (False, False, False),
}
GPUS = {"A100": (8, 0), "H100": (9, 0), "V100": (7, 0), "T4": (7, 5)}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIP_TOOLKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def pretend_cpu(monkeypatch, name):
    amx, avx512_bf16, onednn = CPUS[name]
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn)


def pretend_gpu(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: GPUS[name])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # counts emulation


@pytest.mark.parametrize("cpu, candidates, reason", [
    ("Sapphire Rapids", ("fp32", "bf16"), "native bf16 (AMX)"),
    ("Zen 4", ("fp32", "bf16"), "native bf16 (AVX512_BF16)"),
    ("Skylake-SP", ("fp32",), "no native bf16"), ("Zen 1 (AVX2)", ("fp32",), "no native bf16"),
])
def test_cpu_decision_table(monkeypatch, cpu, candidates, reason):
    pretend_cpu(monkeypatch, cpu)
    choice = precision.hardware_choice("cpu")
    assert choice.candidates == candidates and reason in choice.reason


@pytest.mark.parametrize("gpu, expected", [("A100", "bf16"), ("H100", "bf16"), ("V100", "fp16"), ("T4", "fp16")])
def test_cuda_decision_table(monkeypatch, gpu, expected):
    pretend_gpu(monkeypatch, gpu)
    choice = precision.hardware_choice(torch.device("cuda", 0))
    assert choice.candidates == (expected,) and gpu in choice.reason


def test_no_accelerator_and_unknown_devices_run_fp32(monkeypatch):
    pretend_cpu(monkeypatch, "Zen 1 (AVX2)")
    assert precision.decide_without_measuring("auto", "cpu").precision == "fp32"
    assert precision.hardware_choice("meta").candidates == ("fp32",)


@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_explicit_choice_wins_without_measuring(monkeypatch, name):
    pretend_cpu(monkeypatch, "Sapphire Rapids")
    decision = precision.decide_without_measuring(name, "cpu")
    assert decision == precision.PrecisionDecision(name, "asked for explicitly")


def test_fp16_needs_cuda_and_unknown_names_are_rejected():
    with pytest.raises(UserError, match="fp16.*CUDA"):
        precision.check_precision("fp16", "cpu")
    with pytest.raises(UserError, match="'half' is not one of auto, fp32, bf16, fp16"):
        precision.check_precision("half", "cpu")


def test_autocast_runs_bf16_matmuls_and_fp32_runs_plain():
    a = torch.randn(4, 4)
    with precision.autocast("cpu", "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with precision.autocast("cpu", "fp32"):
        assert (a @ a).dtype == torch.float32


class FakeClock:
    """perf_counter for the measurement: it moves only when a step says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    return fake


def timed_workload(clock, seconds: dict, calls: list, batch_size: int = 4) -> timing.Workload:
    """A workload whose step takes `seconds[precision]` on the fake clock, counting the steps run."""
    def make_step(name):
        def step():
            calls.append(name)
            clock.now += seconds[name]
        return step
    return timing.Workload(make_step, batch_size, {"task": "test", "batch_size": batch_size})


@pytest.mark.parametrize("seconds, expected", [
    ({"fp32": 3.0, "bf16": 1.0}, "bf16"),
    ({"fp32": 1.0, "bf16": 3.0}, "fp32"),
    ({"fp32": 2.0, "bf16": 1.95}, "fp32"),  # 2.5% faster is within the noise: fp32 keeps its precision
])
def test_measurement_keeps_the_faster_and_is_remembered(monkeypatch, cache_dir, clock, seconds, expected):
    pretend_cpu(monkeypatch, "Zen 4")
    calls = []
    decision = precision.decide_precision("auto", "cpu", timed_workload(clock, seconds, calls))
    assert decision.precision == expected and not decision.remembered
    assert calls.count("fp32") == calls.count("bf16") == 1 + timing.MIN_TIMED_ROUNDS
    assert decision.samples_per_s == pytest.approx({name: 4 / step for name, step in seconds.items()})
    assert "measured" in decision.describe() and "samples/s" in decision.describe()

    again = precision.decide_precision("auto", "cpu", timed_workload(clock, seconds, calls))
    assert again.precision == expected and again.remembered and len(calls) == 2 * (1 + timing.MIN_TIMED_ROUNDS)
    assert "remembered" in again.describe()


def test_another_batch_or_thread_count_is_measured_anew(monkeypatch, cache_dir, clock):
    pretend_cpu(monkeypatch, "Sapphire Rapids")
    calls = []
    seconds = {"fp32": 1.0, "bf16": 2.0}
    precision.decide_precision("auto", "cpu", timed_workload(clock, seconds, calls, batch_size=4))
    precision.decide_precision("auto", "cpu", timed_workload(clock, seconds, calls, batch_size=8))
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads + 1)
    precision.decide_precision("auto", "cpu", timed_workload(clock, seconds, calls, batch_size=8))
    assert len(calls) == 3 * 2 * (1 + timing.MIN_TIMED_ROUNDS)


def test_millisecond_steps_are_timed_over_more_rounds(monkeypatch, cache_dir, clock):
    pretend_cpu(monkeypatch, "Zen 4")
    calls = []
    precision.decide_precision("auto", "cpu", timed_workload(clock, {"fp32": 0.3, "bf16": 0.001}, calls))
    # fp32 passes a second of timing after 4 rounds; bf16 never does, so the rounds stop at the limit
    assert calls.count("fp32") == calls.count("bf16") == 1 + timing.MAX_TIMED_ROUNDS


def choose_on_rank(rank, world_size, port, cpus, seconds, out_dir):
    """choose_training_precision on a CPU like `cpus[rank]`, where a step takes `seconds[rank]` on the rank's own
    fake clock and, as the real training step does, runs a collective."""
    with gloo_process_group(rank, world_size, port, timeout_s=20), pytest.MonkeyPatch.context() as patch:
        pretend_cpu(patch, cpus[rank])
        clock, calls = FakeClock(), []
        patch.setattr(timing.time, "perf_counter", clock)
        timed = timed_workload(clock, seconds[rank], calls)

        def make_step(name):
            step = timed.make_step(name)
            return lambda: (all_reduce_sum(torch.ones(1)), step())
        patch.setattr(precision, "training_workload",
                      lambda *args: dataclasses.replace(timed, make_step=make_step))
        ctx = DistributedContext(rank, rank, world_size, torch.device("cpu"))
        decision = precision.choose_training_precision("auto", None, None, 4, ctx, channels_last=False)
    (out_dir / f"rank{rank}.json").write_text(json.dumps({"precision": decision.precision, "steps": len(calls)}))


MEASURED_BY_RANK_0 = {"precision": "bf16", "steps": 2 * (1 + timing.MIN_TIMED_ROUNDS)}


@pytest.mark.parametrize("cpus, expected", [
    (("Zen 4", "Zen 4"), MEASURED_BY_RANK_0),
    (("Zen 4", "Zen 1 (AVX2)"), MEASURED_BY_RANK_0),  # rank 1 alone would settle on fp32 without measuring
    (("Zen 1 (AVX2)", "Zen 4"), {"precision": "fp32", "steps": 0}),  # and here rank 1 alone would measure
])
def test_every_rank_measures_as_rank_0_decides_and_gets_its_choice(monkeypatch, cache_dir, tmp_path, cpus, expected):
    # rank 0 has timed a second of each precision after 2 rounds; rank 1's millisecond steps alone would need 20
    seconds = [{"fp32": 3.0, "bf16": 1.0}, {"fp32": 0.001, "bf16": 0.003}]
    mp.spawn(choose_on_rank, args=(2, free_port(), cpus, seconds, tmp_path), nprocs=2, join=True)
    assert [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)] == [expected] * 2


def test_unreadable_cache_means_measuring_again(monkeypatch, cache_dir, clock):
    pretend_cpu(monkeypatch, "Zen 4")
    cache_dir.mkdir()
    timing.cache_file().write_text("{not json")
    calls = []
    decision = precision.decide_precision("auto", "cpu", timed_workload(clock, {"fp32": 0.001, "bf16": 0.003},
                                                                                        calls))
    assert decision.precision == "fp32" and calls
    assert precision.remembered_decision("cpu", timed_workload(clock, {}, [])) == \
        precision.PrecisionDecision("fp32", decision.reason, decision.samples_per_s, remembered=True)


def test_inference_measurement_leaves_the_model_as_it_was(monkeypatch, cache_dir):
    pretend_cpu(monkeypatch, "Sapphire Rapids")
    torch.manual_seed(0)
    model = build_model(model_config_by_name("quickstart")).eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    decision = precision.choose_inference_precision("auto", model, "cpu", batch_size=8)
    assert decision.precision in ("fp32", "bf16") and set(decision.samples_per_s) == {"fp32", "bf16"}
    assert not model.training and torch.equal(torch.get_rng_state(), rng_before)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
