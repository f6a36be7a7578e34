"""Errors of the pure ``policy`` package.

    PolicyError ("invalid_policy")
    └── RulesError ("invalid_rules")      a rules file that fails validation at load
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["PolicyError", "RulesError"]


class PolicyError(Exception):
    code: ClassVar[str] = "invalid_policy"


class RulesError(PolicyError):
    code = "invalid_rules"
