"""EU DCC business-rule sets in Redis: import (audited, versioned), load, and the directory reader of the CLI.

A rule set is named by the operator (``EU`` for the EU template rules, a country code, the city's own set) and
holds EU DCC Gateway rules in their public JSON format; an import replaces that one set.  The rules are stored as
published, checked again when loaded.  A venue class applies a set when the rules file names it
(``dcc_rule_set``, docs/dcc.md "Rule sets").
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from gateway import keyspace
from gateway.privacy.audit import cli_actor, record_privileged
from gateway.redisio import execute_in_order, redis_errors
from policy.dcc_rules import DccRuleError, RuleSet, parse_rule_set

__all__ = ["RuleSetRegistry", "RuleSetSnapshot", "read_rule_dir"]

log = logging.getLogger("placegate.dccrules")


@dataclass(frozen=True, slots=True)
class RuleSetSnapshot:
    """One consistent read of the stored rule sets."""

    version: int
    rule_sets: dict[str, RuleSet]
    imported_at: datetime | None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DccRuleError(f"{path.name}: not JSON ({exc})") from None


def read_rule_dir(name: str, directory: Path) -> RuleSet:
    """The rule set in ``directory``: every ``*/rule.json`` (the layout of the published rule folders) and every
    ``*.json`` directly in it holding one rule or a list of rules.

    :raises DccRuleError: a file that is not JSON, a rule that is not usable, or no rule at all.
    :raises OSError: the directory or a file cannot be read.
    """
    if not directory.is_dir():
        raise DccRuleError(f"{directory}: not a directory")
    docs: list[Any] = []
    for path in sorted(directory.glob("*/rule.json")):
        docs.append(_json(path))
    for path in sorted(directory.glob("*.json")):
        doc = _json(path)
        docs.extend(doc if isinstance(doc, list) else [doc])
    return parse_rule_set(name, docs)


class RuleSetRegistry:
    """Reads and writes of the stored rule sets (configuration: no TTL)."""

    def __init__(self, redis: Redis, *, actor: str | None = None) -> None:
        self.redis = redis
        self.actor = actor

    async def import_set(self, rule_set: RuleSet, *, now: datetime) -> int:
        """Store (or replace) one rule set; returns the new version of the stored sets."""
        stored = json.dumps([dict(rule.document) for rule in rule_set.rules], sort_keys=True, separators=(",", ":"))
        version = await self.version() + 1
        # Which certificates a venue accepts is a trust decision: audited first, not applied if that fails.
        await record_privileged(self.redis, actor=self.actor or cli_actor(), action="dcc_rules_import",
                                obj="dcc_rules", now=now,
                                extra={"sets": rule_set.name, "rules": str(len(rule_set.rules)),
                                       "version": str(version), "digest": hashlib.sha256(stored.encode()).hexdigest()})
        with redis_errors("DCC reference data"):
            # The set, then its time and the version workers poll (three slots on a cluster: in this order).
            replies = await execute_in_order(self.redis, [
                [("HSET", keyspace.DCC_RULES, rule_set.name, stored)],
                [("SET", keyspace.DCC_RULES_IMPORTED_AT, int(now.timestamp()))],
                [("INCRBY", keyspace.DCC_RULES_VERSION, 1)],
            ])  # fmt: skip
        return int(replies[-1])

    async def remove_set(self, name: str, *, now: datetime) -> bool:
        """Remove one stored rule set (audited first); False when no set has that name (nothing audited)."""
        with redis_errors("DCC reference data"):
            if not await self.redis.hexists(keyspace.DCC_RULES, name):
                return False
        await record_privileged(self.redis, actor=self.actor or cli_actor(), action="dcc_rules_remove",
                                obj="dcc_rules", now=now, extra={"sets": name})
        with redis_errors("DCC reference data"):
            await execute_in_order(self.redis, [[("HDEL", keyspace.DCC_RULES, name)],
                                                [("INCRBY", keyspace.DCC_RULES_VERSION, 1)]])  # fmt: skip
        return True

    async def version(self) -> int:
        with redis_errors("DCC reference data"):
            return int(await self.redis.get(keyspace.DCC_RULES_VERSION) or 0)

    async def load(self) -> RuleSetSnapshot:
        """The stored sets; one that no longer parses is left out and logged (a class naming it then fails closed)."""
        with redis_errors("DCC reference data"):
            # The version first: the sets read after it are at least as new (writes bump it after the data).
            version, imported, raw = await execute_in_order(self.redis, [
                [("GET", keyspace.DCC_RULES_VERSION)], [("GET", keyspace.DCC_RULES_IMPORTED_AT)],
                [("HGETALL", keyspace.DCC_RULES)],
            ])  # fmt: skip
        sets: dict[str, RuleSet] = {}
        for name, value in raw.items():
            try:
                rule_set = parse_rule_set(name.decode(), json.loads(value))
            except (DccRuleError, ValueError, UnicodeDecodeError):
                log.warning("skipped an unusable stored rule set")
                continue
            sets[rule_set.name] = rule_set
        imported_at = None if imported is None else datetime.fromtimestamp(int(imported), UTC)
        return RuleSetSnapshot(int(version or 0), sets, imported_at)
