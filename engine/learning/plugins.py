"""The ``prompt_evolution`` and ``attribution`` built-in plugins (``docs/learning.md``).

``prompt_evolution`` (``worker_options``): picks the worker's (or, two-pass, the editor's)
template variant for each unit by Thompson sampling and passes it in
``WorkerOptions.templates``; ``epoch_executed``: counts each final unit's outcome on its
variant; ``after_epoch``: asks for a mutation of the best variant when ``mutate`` is on.

``attribution`` (``worker_options``): records the decisions each unit followed;
``epoch_executed``: settles their outcomes; ``planning_notes``: tells the planner the
strongest findings.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from engine.learning import decisions
from engine.plugins import EpochView, Plugin, PluginConfig, WorkerOptions

if TYPE_CHECKING:
    from engine.config import MissionConfig
    from engine.runtime import Runtime


class PromptEvolutionConfig(PluginConfig):
    seed: int | None = Field(None, description="Seed of the Thompson sampler (reproducible choices).")
    roles: list[Literal["worker", "editor"]] = Field(
        default_factory=lambda: ["worker", "editor"], description="Templates that evolve.")
    variants_dir: Path | None = Field(
        None, description="Directory of <role>.<name>.md variant files, loaded at start.")
    mutate: bool = Field(False, description="Ask the planner backend for mutations of the best variant.")
    min_samples: int = Field(10, ge=1, description="Samples the best variant needs before a mutation.")
    max_variants: int = Field(4, ge=2, le=20, description="Variants per role at most.")


class PromptEvolutionPlugin(Plugin):
    name = "prompt_evolution"
    Config = PromptEvolutionConfig
    builtin = True
    order = 80

    def __init__(self, config: PluginConfig, mission: MissionConfig) -> None:
        super().__init__(config, mission)
        self.rt: Runtime | None = None
        self.variants: Any = None
        self.cfg: PromptEvolutionConfig = config  # type: ignore[assignment]

    def _bind(self, rt: Runtime) -> None:
        if self.rt is rt:
            return
        from engine.learning.prompt_evolution import PromptVariants

        self.rt = rt
        self.variants = PromptVariants(rt.store, self.cfg.seed)
        if self.cfg.variants_dir is not None:
            for problem in self.variants.load_dir(Path(self.cfg.variants_dir)):
                rt.log(f"prompt variants: {problem}", level="warning")

    def planning_notes(self, rt: Runtime) -> list[str]:
        self._bind(rt)  # the first hook with the runtime, before any worker session
        return []

    async def around_phase(self, phase: str, view: EpochView, proceed: Any) -> Any:
        self._bind(view.rt)
        return await proceed()

    def worker_options(self, unit: dict[str, Any], options: WorkerOptions) -> WorkerOptions:
        if self.rt is None or not unit.get("id"):
            return options
        two_pass = self.mission.agent.two_pass and not options.single_pass
        role = "editor" if two_pass else "worker"
        if role not in self.cfg.roles:
            return options
        store = self.rt.store
        kept = store.query("SELECT v.* FROM decisions d JOIN prompt_variants v "
                           "ON v.id = d.prompt_variant_id WHERE d.unit_id = ? AND v.role = ?",
                           (unit["id"], role))
        if kept:  # a retry keeps the unit's variant: one unit, one sample
            from engine.learning.prompt_evolution import Variant

            r = kept[0]
            variant = Variant(r["id"], r["role"], r["name"], r["body"], r["successes"], r["failures"])
        else:
            variant = self.variants.choose(role)
        label = f"{role}:{variant.name}"
        decisions.record(store, unit, model=options.model or self.mission.scheduler.model,
                         two_pass=two_pass, prompt_variant=label, prompt_variant_id=variant.id)
        templates = dict(options.templates)
        if variant.body is not None:
            templates[role] = variant.body
        return replace(options, templates=templates, prompt_variant=label)

    async def epoch_executed(self, view: EpochView) -> None:
        decisions.settle(view.rt.store, view.rt.mission_id, self.mission.review.min_review_score)

    async def after_epoch(self, view: EpochView) -> None:
        if not self.cfg.mutate:
            return
        self._bind(view.rt)
        failed = view.rt.store.query(
            "SELECT title, reason FROM units WHERE epoch_id = ? AND is_leaf = 1 AND status = 'failed'",
            (view.epoch_id,))
        evidence = "\n".join(f"- {r['title']}: {r['reason'] or ''}"[:300] for r in failed[:10])
        for role in self.cfg.roles:
            await self.variants.mutate(view.rt.llm.ask, role, min_samples=self.cfg.min_samples,
                                       max_variants=self.cfg.max_variants, evidence=evidence)


class AttributionConfig(PluginConfig):
    findings: int = Field(3, ge=0, le=10, description="Strong findings told to the planner.")


class AttributionPlugin(Plugin):
    name = "attribution"
    Config = AttributionConfig
    builtin = True
    order = 90

    def __init__(self, config: PluginConfig, mission: MissionConfig) -> None:
        super().__init__(config, mission)
        self.rt: Runtime | None = None

    def planning_notes(self, rt: Runtime) -> list[str]:
        from engine.learning.attribution import effects, outcomes, strongest

        self.rt = rt
        limit = getattr(self.config, "findings", 3)
        found = strongest(effects(outcomes(rt.store)), limit) if limit else []
        return [f"Outcome attribution (earlier units): {e.sentence()}" for e in found]

    async def around_phase(self, phase: str, view: EpochView, proceed: Any) -> Any:
        self.rt = view.rt
        return await proceed()

    def worker_options(self, unit: dict[str, Any], options: WorkerOptions) -> WorkerOptions:
        if self.rt is not None and unit.get("id"):
            decisions.record(self.rt.store, unit,
                             model=options.model or self.mission.scheduler.model,
                             two_pass=self.mission.agent.two_pass and not options.single_pass,
                             prompt_variant=options.prompt_variant)
        return options

    async def epoch_executed(self, view: EpochView) -> None:
        decisions.settle(view.rt.store, view.rt.mission_id, self.mission.review.min_review_score)
