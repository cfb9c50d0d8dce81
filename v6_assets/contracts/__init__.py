"""The ground floor: facts every layer shares (how money is compared, ...). Imports nothing from v6_assets."""
