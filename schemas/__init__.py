"""Wire contracts: identifiers, processors, money, commands and events."""
