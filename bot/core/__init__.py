"""What the bot does, free of Telegram, llama.cpp, HTTP and SQLite drivers."""
