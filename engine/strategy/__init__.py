"""Strategy: what to do after a mission (the next objective for mission chaining)."""

from engine.strategy.strategist import StrategyProposal, parse_strategy, propose_next_objective

__all__ = ["StrategyProposal", "parse_strategy", "propose_next_objective"]
