"""crmvalue: customer value prediction for CRM teams.

Transactions -> RFM features -> BG/NBD + Gamma-Gamma CLV -> value quadrants -> MLflow -> CRM export.

From Python::

    import crmvalue
    scores = crmvalue.load_predictions(run="latest")  # a DataFrame: string ids, typed columns
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crmvalue")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from crmvalue.errors import CrmvalueError  # noqa: E402

__all__ = ["CrmvalueError", "__version__", "load_predictions"]


def __getattr__(name: str):
    # lazy: `import crmvalue` must not import MLflow; crmvalue.api imports it only when called
    if name == "load_predictions":
        from crmvalue.api import load_predictions

        return load_predictions
    raise AttributeError(f"module 'crmvalue' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"load_predictions"})
