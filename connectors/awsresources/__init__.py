"""Creating the queues, streams, tables and topics a template declares, in an emulator
(`lambda-bridge run --template ... --create-resources`), and finding the account an
endpoint answers for. The core reaches it only through the command line, lazily."""
