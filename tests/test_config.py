"""The config tree as Lightning + Hydra users know it: every option composes, the README's commands resolve to the
recipe they claim, and the embedded quick schedule never leaks into other data."""

import inspect
import re

import pytest
from conftest import ROOT, run_script
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from timm.optim import get_optimizer_class

from crossvit.cli import drop_null_groups

CONF = ROOT / "conf"
# The paper's recipe as ../shared/PAPER.md writes it ("Training recipe (official main.py defaults)"): the expected
# values come from the paper, not from conf/.
PAPER_RECIPE = {  # the optimizer (conf/optim) and the recipe around it (conf/recipe)
    "optim.opt": "adamw",
    "optim.lr": 5e-4,  # per 512 images
    "optim.weight_decay": 0.05,
    "optim.eps": 1e-8,
    "recipe.warmup_epochs": 5,
    "recipe.warmup_lr": 1e-6,
    "recipe.min_lr": 1e-5,
    "recipe.label_smoothing": 0.1,
    "recipe.mixup": 0.8,
    "recipe.cutmix": 1.0,
    "recipe.mixup_switch_prob": 0.5,
}
PAPER_IMAGES = dict(
    auto_augment="rand-m9-mstd0.5-inc1",
    color_jitter=0.4,
    re_prob=0.25,
    re_mode="pixel",
    interpolation="bicubic",
    crop_pct=0.875,
    repeated_aug=True,
)
PAPER_EPOCHS = 300
# The README's make train figures.
QUICK_SCHEDULE = {"optim.lr": 2e-3, "recipe.warmup_epochs": 0.3, "recipe.mixup": 0.0, "recipe.cutmix": 0.0}


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    """One Hydra initialisation for the module's many compositions."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        yield


def compose_train(*overrides: str):
    return compose("train", overrides=drop_null_groups(list(overrides), CONF))


def readme_train_commands() -> list[list[str]]:
    """Every `python src/train.py ...` the README shows, in code blocks or inline, as override lists: a sweep's
    first job, placeholders filled in."""
    text = (ROOT / "README.md").read_text()
    commands = [m.group(1) for m in re.finditer(r"`(python src/train\.py[^`]*)`", text, re.S)]
    commands += re.findall(r"^(python src/train\.py.*?)(?:\s+#.*)?$", text, re.M)
    out = []
    for command in commands:
        args = []
        for token in re.sub(r"<[^>]*>", "X", command).split()[2:]:
            if token in ("-m", "...", "\\", "X"):  # a sweep flag, elisions, a placeholder for other overrides
                continue
            key, _, value = token.partition("=")
            if "," in value and not value.startswith("["):  # a sweep: its first job
                value = value.split(",")[0]
            args.append(f"{key}={value}" if value else key)
        out.append(args)
    return out


def check_paper_recipe(cfg, command: str, model: str) -> None:
    for key, value in PAPER_RECIPE.items():
        assert OmegaConf.select(cfg, key) == pytest.approx(value), f"{command}: {key}"
    assert cfg.trainer.max_epochs == PAPER_EPOCHS, command
    if model != "crossvit_micro_28":  # the project's own 28-pixel model; the released ones train with drop path
        assert cfg.model.drop_path_rate == pytest.approx(0.1), command
    if "ImageFolder" in cfg.data._target_:
        for key, value in PAPER_IMAGES.items():
            assert cfg.data[key] == value, f"{command}: data.{key}"


def test_every_readme_command_composes_to_the_recipe_it_names():
    commands = readme_train_commands()
    assert len(commands) >= 8  # the parse found the README's commands
    for args in commands:
        command = " ".join(args)
        cfg = compose_train(*args)
        for part in ("optim", "recipe", "model"):
            OmegaConf.to_container(cfg[part], resolve=True)
        experiment = next((a.split("=")[1] for a in args if a.startswith(("experiment=", "hparams_search="))), None)
        if experiment in (None, "imagenet_paper", "arch_ablation"):  # the README calls these the paper's recipe
            model = next((a.split("=")[1] for a in args if a.startswith("model=")), "crossvit_micro_28")
            check_paper_recipe(cfg, command, "crossvit_small" if experiment and model == "crossvit_micro_28" else model)
        else:  # the embedded quick schedule, by name
            for key, value in QUICK_SCHEDULE.items():
                assert OmegaConf.select(cfg, key) == pytest.approx(value), f"{command}: {key}"


@pytest.mark.parametrize("data", ["image_folder", "cifar10", "cifar100", "synthetic", "fashion_mnist"])
def test_choosing_data_never_brings_another_data_sets_schedule(data):
    check_paper_recipe(compose_train(f"data={data}", "model=crossvit_18"), f"data={data}", "crossvit_18")


def test_experiment_null_and_the_quick_run_by_name():
    assert compose_train("experiment=null").optim.lr == pytest.approx(PAPER_RECIPE["optim.lr"])
    quick = compose_train("experiment=fashion_mnist", "data=synthetic")
    assert quick.trainer.max_epochs == 3 and quick.optim.lr == pytest.approx(2e-3)
    assert quick.data._target_.endswith("SyntheticDataModule")  # the command line still picks the data
    # Through the script, as a user types it (Hydra alone rejects `experiment=null`).
    proc = run_script("train.py", "experiment=null", "--cfg", "job")
    assert "lr: 0.0005" in proc.stdout and "max_epochs: 300" in proc.stdout


GROUPS = [
    "model",
    "fusion",
    "data",
    "optim",
    "recipe",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "experiment",
    "ablation",
    "debug",
]


@pytest.mark.parametrize("group", [*GROUPS, "hparams_search"])
def test_every_config_group_option_composes(group):
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options, group
    for option in options:
        cfg = compose_train(f"{group}={option}")
        for part in ("model", "fusion", "data", "optim", "recipe"):
            OmegaConf.to_container(cfg[part], resolve=True)  # every interpolation resolves
        assert cfg.trainer._target_ == "lightning.pytorch.Trainer", f"{group}={option}"


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("trainer.fast_dev_run=true", "fast_dev_run", True),
        ("trainer.limit_train_batches=10", "limit_train_batches", 10),
        ("trainer.overfit_batches=3", "overfit_batches", 3),
        ("trainer.profiler=simple", "profiler", "simple"),
        ("debug=fdr", "fast_dev_run", True),
        ("debug=overfit", "overfit_batches", 3),
        ("debug=limit", "limit_train_batches", 0.01),
        ("debug=profiler", "profiler", "simple"),
    ],
)
def test_trainer_flags_are_plain_overrides(override, key, value):
    assert compose_train(override).trainer[key] == value


@pytest.mark.parametrize(("trainer", "gpus"), [("ddp_cpu", None), ("cpu", None), ("ddp", 2), ("gpu", 1)])
def test_the_slurm_launcher_asks_for_gpus_only_on_gpu_trainers(trainer, gpus):
    cfg = compose("train", overrides=["hydra/launcher=slurm", f"trainer={trainer}"], return_hydra_config=True)
    assert OmegaConf.select(cfg, "hydra.launcher.gpus_per_node") == gpus
    assert OmegaConf.select(cfg, "hydra.launcher.tasks_per_node") == cfg.trainer.devices
    assert OmegaConf.select(cfg, "hydra.launcher.cpus_per_task") == cfg.data.num_workers + 1


# Groups that describe one concern each; each may read paths and top-level keys, never another of these.
CONCERNS = ("model", "fusion", "data", "optim", "recipe", "trainer")


def test_no_group_reads_another_and_the_root_wires_them():
    """in_chans and num_classes are stated by the data, img_size by the model; conf/train.yaml alone wires them."""
    for group in CONCERNS:
        for path in sorted((CONF / group).glob("*.yaml")):
            text = path.read_text()
            read = [c for c in CONCERNS if re.search(rf"\$\{{{c}\.", text)]
            assert not read, f"{path.relative_to(ROOT)} reads {read}"
            if group == "model":
                assert not re.search(r"^(in_chans|num_classes):", text, re.M), f"{path.name} states the data's keys"
    for model, data in (("crossvit_9", "cifar100"), ("crossvit_micro_28", "fashion_mnist")):
        cfg = compose_train(f"model={model}", f"data={data}")
        m, d, o = (OmegaConf.to_container(cfg[part], resolve=True) for part in ("model", "data", "optim"))
        assert (m["in_chans"], m["num_classes"]) == (d["in_chans"], d["num_classes"]), (model, data)
        assert d["img_size"] == m["img_size"][0] and o["batch_size"] == d["batch_size"], (model, data)


def test_the_optim_group_holds_the_optimizer_alone():
    """Each conf/optim option names a timm optimizer and sets only what that optimizer takes (the schedule, loss and
    regularisation are conf/recipe); optim.batch_size is train.yaml's wiring for the lr scaling."""
    for path in sorted((CONF / "optim").glob("*.yaml")):
        optim = compose_train(f"optim={path.stem}").optim
        takes = inspect.signature(get_optimizer_class(optim.opt, bind_defaults=False)).parameters
        assert not set(optim) - {"opt", "batch_size"} - set(takes), path.name


def test_keys_that_moved_to_the_recipe_still_work_with_a_notice():
    proc = run_script("train.py", "optim.mixup=0.3", "+optim.ema_decay=0.99", "optim.lr=1e-3", "--cfg", "job")
    job = OmegaConf.create(proc.stdout)
    assert (job.recipe.mixup, job.recipe.ema_decay, job.optim.lr) == (0.3, 0.99, 1e-3)
    assert "mixup" not in job.optim and "note: optim.mixup is now recipe.mixup" in proc.stderr


@pytest.mark.parametrize("trainer", ["gpu", "ddp", "cpu", "ddp_cpu"])
def test_compile_is_cuda_graphs_by_default_on_gpus_eager_on_cpus_and_in_debug_modes(trainer):
    """CUDA graphs are what the speed work measured users getting on a GPU (issue 14 item 3); CPU runs and debug
    modes stay eager; whatever the user sets passes as it is."""
    from crossvit.run import compile_mode

    cfg = compose_train(f"trainer={trainer}")
    device = "cuda" if cfg.trainer.accelerator == "gpu" else "cpu"
    assert compile_mode(cfg.compile, device) == ("reduce-overhead" if trainer in ("gpu", "ddp") else False)
    assert compile_mode(compose_train(f"trainer={trainer}", "debug=default").compile, device) is False
    for chosen in (False, True, "max-autotune"):
        assert compile_mode(compose_train(f"trainer={trainer}", f"compile={str(chosen).lower()}").compile, device) == (
            chosen
        )
