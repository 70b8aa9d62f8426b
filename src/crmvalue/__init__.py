"""crmvalue: customer value prediction for CRM teams.

Transactions -> RFM features -> BG/NBD + Gamma-Gamma CLV -> value quadrants -> MLflow -> CRM export.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crmvalue")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from crmvalue.errors import CrmvalueError  # noqa: E402

__all__ = ["CrmvalueError", "__version__"]
