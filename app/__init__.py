"""TradeGraph: trading bots served as one GraphQL API."""
