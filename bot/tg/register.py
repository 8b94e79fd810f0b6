"""The one place that wires Telegram to the handlers: every handler, and both command menus."""

from __future__ import annotations

from typing import Any

from telegram import Bot, BotCommandScopeChat
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.tg import admin_handlers as admin
from bot.tg import handlers as user
from bot.tg.menus import ADMIN_COMMANDS, USER_COMMANDS


def add_handlers(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Register every handler on the application (commands before the catch-all text)."""
    commands = {
        "start": user.start,
        "help": user.help_command,
        "whoami": user.whoami,
        "reset": user.reset,
        "sources": user.sources,
        "cancel": user.cancel,
        "ask": user.ask_command,
        "add": admin.add,
        "docs": admin.docs,
        "forget": admin.forget,
        "reindex": admin.reindex,
        "adapter": admin.adapter,
        "eval": admin.eval_command,
        "backup": admin.backup_command,
        "stats": admin.stats,
        "kb": admin.kb,
    }
    for command, handler in commands.items():
        application.add_handler(CommandHandler(command, handler))
    application.add_handler(CallbackQueryHandler(admin.docs_button, pattern=r"^docs:"))
    application.add_handler(CallbackQueryHandler(admin.forget_button, pattern=r"^forget:"))
    application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, user.chat_migrated))
    application.add_handler(MessageHandler(filters.Document.ALL, admin.upload))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, user.text_message))
    # Group 1 runs after the handlers above, for every update.
    application.add_handler(TypeHandler(object, user.alert_degraded), group=1)
    application.add_error_handler(user.on_error)


async def set_command_menus(bot: Bot, admin_ids: tuple[int, ...]) -> None:
    """Everyone's menu, and each admin's with the admin commands too. The menu is a
    convenience; the admin check itself is in bot.core.admin."""
    await bot.set_my_commands(USER_COMMANDS)
    for admin_id in admin_ids:
        menu = USER_COMMANDS + ADMIN_COMMANDS
        await bot.set_my_commands(menu, scope=BotCommandScopeChat(admin_id))
