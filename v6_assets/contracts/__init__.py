"""The ground floor: facts every layer shares. Imports nothing from v6_assets.

- ``streams``: every stream's events, their fields, types and column descriptions;
- ``tables``: every Delta table's columns, types, nullability, descriptions, partitioning and key;
- ``unset``: IB's unset double and the one rule that recognises it;
- ``money``: how amounts of money are compared.

NYSE sessions, the EOD cut and the New York zone are ``v6_assets.sessions``, on the same floor.
"""
