from connectors.providers.csv.provider import CsvConnector

__all__ = ["CsvConnector"]
