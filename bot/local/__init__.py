"""Running the real bot on this machine, without Telegram: a local Bot API emulator and the
terminal chat (`ragtune chat`, `make chat`) that talks to the bot through it."""
