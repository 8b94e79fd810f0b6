"""ragtune: the Telegram bot, its answering core and the model runtime."""
