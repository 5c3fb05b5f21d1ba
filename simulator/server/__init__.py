"""The mock Dataverse server: an aiohttp application speaking a Web API v9.2 subset."""
