"""The commands people see: the two command menus, /start's greeting and /help's text."""

from __future__ import annotations

from telegram import BotCommand

WELCOME = (
    "Hello! Ask me anything about the knowledge base and I will answer from it, "
    "with the sources I used.\n\n"
    "/help what I can do\n/reset forget our conversation\n/sources the sources of my last answer\n"
    "/whoami your Telegram id (an admin needs it to let you in or make you an admin)"
)
HELP = (
    "Send a question as a message. In groups, mention me, reply to me or write /ask and your "
    "question.\n\n"
    "/ask ask in a group\n/reset forget our conversation\n"
    "/sources the sources behind my last answer\n/cancel stop the answer being written\n"
    "/whoami your Telegram id"
)
USER_COMMANDS = [
    BotCommand("ask", "ask a question (in groups)"),
    BotCommand("reset", "forget our conversation"),
    BotCommand("sources", "the sources of my last answer"),
    BotCommand("cancel", "stop the answer being written"),
    BotCommand("help", "what I can do"),
    BotCommand("whoami", "your Telegram id"),
]
ADMIN_COMMANDS = [
    BotCommand("add", "add text to the knowledge base"),
    BotCommand("docs", "list documents"),
    BotCommand("forget", "remove a document"),
    BotCommand("reindex", "re-embed this chat's collection (all: every one)"),
    BotCommand("adapter", "list or switch LoRA adapters (in a group: this chat's own)"),
    BotCommand("eval", "compare base, fine-tuned, RAG and both"),
    BotCommand("backup", "a checked copy of the knowledge base"),
    BotCommand("stats", "knowledge base, model, queue, users today"),
    BotCommand("kb", "this chat's collection: /kb new NAME, /kb use NAME, /kb list"),
]


def help_text(admin: bool) -> str:
    """/help's text: the user commands, and for admins their own commands too."""
    if not admin:
        return HELP
    lines = "\n".join(f"/{c.command} {c.description}" for c in ADMIN_COMMANDS)
    return f"{HELP}\n\nAs an admin you can also use:\n{lines}"
