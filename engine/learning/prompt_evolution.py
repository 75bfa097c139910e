"""Prompt evolution: template variants per role, chosen by Thompson sampling on outcomes.

Each evolving role (``worker``, ``editor``: the templates whose session does the edit) has
variants in the ``prompt_variants`` table; the shipped template is the first one (name
``shipped``, ``body`` NULL). Variants also come from files ``<role>.<name>.md`` in the
plugin's ``variants_dir``, and, when ``mutate`` is on, from the LLM.

**Choice (Thompson sampling).** A variant with ``s`` successes and ``f`` failures has the
posterior ``Beta(1 + s, 1 + f)`` of its success rate (uniform prior). For each session one
value is drawn from each variant's posterior and the variant with the largest draw is used:
the probability a variant is chosen equals the posterior probability that it is the best,
so untried variants are explored and clearly worse ones fade out. Source: W. R. Thompson,
"On the likelihood that one unknown probability exceeds another", *Biometrika* 25 (1933);
D. Russo, B. Van Roy, A. Kazerouni, I. Osband, Z. Wen, "A Tutorial on Thompson Sampling",
*Foundations and Trends in Machine Learning* 11(1), 2018, section 3 (Beta-Bernoulli bandit).
Draws use ``random.Random(seed)``: with a seed the sequence of choices is reproducible.

**Outcome.** Success is what :mod:`engine.learning.decisions` calls success: merged without a
fixup round and with a passing review score.

**Mutation.** When ``mutate`` is on, after an epoch, if the best variant (highest posterior
mean) has at least ``min_samples`` samples and the role has fewer than ``max_variants``
variants, the planner backend is asked for a rewrite of it (prompt ``prompt_mutation``). A
rewrite must keep exactly the template's placeholders; otherwise it is refused.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.planning.ask import PLANNER, Ask, clip
from engine.planning.parse import PlanParseError, extract_json
from engine.prompts import PROMPTS_DIR, PromptError, placeholders, render
from engine.store import Store

SHIPPED = "shipped"
ROLES = ("worker", "editor", "architect")
MAX_TEMPLATE_CHARS = 20000


@dataclass(frozen=True)
class Variant:
    id: int
    role: str
    name: str
    body: str | None  # None: the shipped template
    successes: int
    failures: int

    @property
    def samples(self) -> int:
        return self.successes + self.failures

    @property
    def posterior_mean(self) -> float:
        """Mean of Beta(1 + s, 1 + f): (s + 1) / (n + 2) (Laplace's rule of succession)."""
        return (self.successes + 1) / (self.samples + 2)

    def text(self) -> str:
        return self.body if self.body is not None else shipped_text(self.role)


def shipped_text(role: str) -> str:
    return (PROMPTS_DIR / f"{role}.md").read_text()


def check_variant(role: str, body: str) -> None:
    """A variant must use exactly the shipped template's placeholders (else PromptError)."""
    want, got = placeholders(shipped_text(role)), placeholders(body)
    if want != got:
        missing, extra = sorted(want - got), sorted(got - want)
        raise PromptError(f"variant of {role!r}: placeholders differ (missing {missing}, "
                          f"unknown {extra})")


class PromptVariants:
    """The variants of a store, and the Thompson sampler over them."""

    def __init__(self, store: Store, seed: int | None = None) -> None:
        self.store = store
        self.rng = random.Random(seed)

    def ensure_shipped(self, role: str) -> None:
        self.store.query("SELECT 1")  # the table exists (migrated store)
        with self.store.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO prompt_variants (role, name, body, created_at) "
                         "VALUES (?, ?, NULL, ?)", (role, SHIPPED, time.time()))

    def add(self, role: str, name: str, body: str, parent_id: int | None = None) -> int | None:
        """Add a variant (checked); returns its id, ``None`` when the name exists."""
        if role not in ROLES:
            raise PromptError(f"no evolving template named {role!r} (one of {', '.join(ROLES)})")
        check_variant(role, body)
        self.ensure_shipped(role)
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO prompt_variants (role, name, body, parent_id, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (role, name, body, parent_id, time.time()))
            if not cur.rowcount:
                return None
            variant_id = int(cur.lastrowid)
        self.store.append_event("prompt.variant", id=variant_id, role=role, name=name,
                                parent_id=parent_id)
        return variant_id

    def load_dir(self, directory: Path) -> list[str]:
        """Add the variants of ``<role>.<name>.md`` files; returns problems (one per file)."""
        problems = []
        for path in sorted(directory.glob("*.md")):
            role, _, name = path.stem.partition(".")
            if role not in ROLES or not name:
                problems.append(f"{path.name}: expected <role>.<name>.md with role in {ROLES}")
                continue
            try:
                self.add(role, name, path.read_text())
            except PromptError as exc:
                problems.append(f"{path.name}: {exc}")
        return problems

    def variants(self, role: str | None = None) -> list[Variant]:
        where, params = ("role = ?", (role,)) if role else (None, ())
        return [Variant(r["id"], r["role"], r["name"], r["body"], r["successes"], r["failures"])
                for r in self.store.rows("prompt_variants", where, params)]

    def choose(self, role: str) -> Variant:
        """Thompson sampling: one Beta(1 + s, 1 + f) draw per variant, the largest wins
        (ties: the older variant)."""
        self.ensure_shipped(role)
        options = self.variants(role)
        draws = [(self.rng.betavariate(1 + v.successes, 1 + v.failures), -v.id, v) for v in options]
        return max(draws, key=lambda d: (d[0], d[1]))[2]

    def best(self, role: str) -> Variant:
        self.ensure_shipped(role)
        return max(self.variants(role), key=lambda v: (v.posterior_mean, -v.id))

    async def mutate(self, ask: Ask, role: str, *, min_samples: int, max_variants: int,
                     evidence: str = "") -> int | None:
        """Ask for a rewrite of the best variant when it has ``min_samples`` samples and the
        role has fewer than ``max_variants`` variants; returns the new variant's id."""
        best = self.best(role)
        if best.samples < min_samples or len(self.variants(role)) >= max_variants:
            return None
        prompt = render("prompt_mutation", role=role, template=clip(best.text(), MAX_TEMPLATE_CHARS),
                        successes=str(best.successes), failures=str(best.failures),
                        placeholders=", ".join(f"${p}" for p in sorted(placeholders(best.text()))),
                        evidence=evidence or "(none)")
        try:
            data = extract_json(await ask(PLANNER, prompt))
            body = data.get("template") if isinstance(data, dict) else None
            if not isinstance(body, str) or not body.strip():
                raise PlanParseError('expected {"template": "..."}')
            name = f"m{len(self.variants(role))}-from-{best.name}"[:60]
            return self.add(role, name, body, parent_id=best.id)
        except (PlanParseError, PromptError) as exc:
            self.store.append_event("log", level="warning",
                                    message=f"prompt mutation of {role} refused: {exc}")
            return None


def variant_rows(store: Store) -> list[dict[str, Any]]:
    """Every variant with its samples and posterior mean (for ``mc prompts``)."""
    return [{"id": v.id, "role": v.role, "name": v.name, "successes": v.successes,
             "failures": v.failures, "samples": v.samples,
             "posterior_mean": round(v.posterior_mean, 3)}
            for v in PromptVariants(store).variants()]
