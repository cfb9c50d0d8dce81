"""v6_assets: Interactive Brokers option positions -> Delta Lake -> daily PnL and exposure in Dagster."""

__version__ = "0.1.0"
