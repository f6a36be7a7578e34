"""The status feature's typed application state."""

from __future__ import annotations

from aiohttp import web

from gateway.status.writer import StatusWriter

__all__ = ["STATUS_WRITER"]

STATUS_WRITER: web.AppKey[StatusWriter] = web.AppKey("status_writer", StatusWriter)
