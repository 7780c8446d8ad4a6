"""What `python -m suite.run --help` lists: the config groups a user picks (conf/<group>/*.yaml).

Internal groups stay out of the help: `claims` (report rules), `hydra`, and every nested group
(`experiment/arm/*`, `experiment/common/*`, `profile/grid`, the `schema/*` nodes of the
ConfigStore). The help template lives in conf/config.yaml (`hydra.help.template`) and calls
`${sparq_groups:}`, registered by `suite.config.register_configs`.
"""

from __future__ import annotations

from suite.paths import CONF_DIR

INTERNAL_GROUPS = ("claims", "hydra")
GRID_GROUPS = ("experiment",)  # picked with -m +experiment=NAME (a whole grid)


def user_groups() -> dict[str, list[str]]:
    """Top-level config groups of conf/ and their options, internal groups left out."""
    groups = {}
    for d in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in INTERNAL_GROUPS):
        options = sorted(p.stem for p in d.glob("*.yaml"))
        if options:
            groups[d.name] = options
    return groups


def groups_text() -> str:
    groups = user_groups()
    lines = [f"  {group}: {', '.join(options)}" for group, options in groups.items() if group not in GRID_GROUPS]
    for group in GRID_GROUPS:
        options = [o for o in groups.get(group, []) if not o.endswith("_full")]
        lines.append(f"  grids, -m +{group}=NAME (profile=full runs NAME_full): {', '.join(options)}")
    return "\n".join(lines)
