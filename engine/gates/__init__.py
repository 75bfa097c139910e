"""Gates: review of a unit's diff, objective check, progress evaluation, fixup winner
selection and human-in-the-loop approvals."""
