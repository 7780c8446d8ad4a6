"""The jobs of a Hydra basic-sweeper multirun, expanded without running it (grid plans, ETAs)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def expand_sweep(config: DictConfig) -> list[list[str]] | None:
    """The jobs (override lists) a basic-sweeper multirun will launch; None for other sweepers.
    Hydra's public override parser + itertools.product, as the basic sweeper does (one entry per
    key, kept where it first appeared, its last value winning; discrete sweeps only)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper
    if "BasicSweeper" not in str(sweeper.get("_target_", "")):
        return None
    params = sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if isinstance(params, DictConfig) else {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    by_key: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(arguments):
        key = o.get_key_element()
        if o.is_sweep_override() and not o.is_discrete_sweep():
            return None  # the basic sweeper refuses interval sweeps
        by_key[key] = [f"{key}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() \
            else [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*by_key.values())]


def experiment_jobs(experiment: str) -> tuple[DictConfig, list[list[str]]]:
    """The composed config of `+experiment=NAME` and the jobs its sweep will launch (no run)."""
    from hydra import compose, initialize_config_dir

    from suite.config import register_configs
    from suite.paths import CONF_DIR

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    cfg.hydra.overrides.task = [f"+experiment={experiment}"]
    return cfg, expand_sweep(cfg) or []


def _affects_model(override: str) -> bool:
    """Whether an override can change a cell's model: `model...` keys and experiment groups (which
    are `@package _global_`); task, seed and method options cannot."""
    key = override.lstrip("+~").partition("=")[0]
    return key.startswith(("model", "experiment"))


def grid_model_configs(overrides: list[str]) -> list[tuple[object, list[str]]]:
    """The distinct model configs a multirun with these command-line overrides needs, each with the
    overrides of one job that needs it; [] for sweeps it cannot expand. Composes one job per distinct
    set of model-affecting overrides (seconds, not one compose per cell). Jobs that do not compose
    or validate are left out: the grid records them FAILED as it always did."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from suite.config import register_configs, validate
    from suite.errors import SparqError
    from suite.paths import CONF_DIR

    register_configs()
    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    parsed = OverridesParser.create().parse_overrides(task)
    fixed = [text for text, o in zip(task, parsed, strict=True) if not o.is_sweep_override()]
    out: dict[str, tuple[object, list[str]]] = {}
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        base = compose("config", overrides=fixed, return_hydra_config=True)
        base.hydra.overrides.task = task
        seen = set()
        for job in expand_sweep(base) or []:
            key = tuple(o for o in job if _affects_model(o))
            if key in seen:
                continue
            seen.add(key)
            try:
                model = validate(compose("config", overrides=job)).model
            except (HydraException, OmegaConfBaseException, SparqError):
                continue
            out.setdefault(repr(model), (model, job))
    return list(out.values())


def command_line_jobs(overrides: list[str]):
    """The composed config of every job `python -m suite.run -m OVERRIDES` would launch (basic
    sweeper), without running any: Hydra and OmegaConf errors surface here, before the grid."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from suite.config import register_configs
    from suite.paths import CONF_DIR

    register_configs()
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    task = [o.input_line for o in parsed if not o.key_or_group.startswith("hydra")]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=fixed, return_hydra_config=True)
        cfg.hydra.overrides.task = task
        for job in expand_sweep(cfg) or [task]:
            yield compose("config", overrides=job)
