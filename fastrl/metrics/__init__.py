"""Representation quality: neighbourhood preservation, kNN and linear-probe
accuracy, and (re-exported from :mod:`fastrl.losses`) ``alignment`` and
``uniformity``."""
from fastrl.metrics.neighborhood import knn_accuracy, knn_recall, trustworthiness
from fastrl.metrics.probe import linear_probe
from fastrl.metrics.report import embedding_report

__all__ = ["embedding_report", "knn_accuracy", "knn_recall", "linear_probe", "trustworthiness"]


def __getattr__(name: str):
    # alignment / uniformity live with the contrastive losses; imported lazily
    # so fastrl.metrics works without them.
    if name in ("alignment", "uniformity"):
        import fastrl.losses as losses
        try:
            return getattr(losses, name)
        except AttributeError:
            raise AttributeError(f"fastrl.metrics.{name} comes from fastrl.losses, which does not provide it "
                                 "in this build") from None
    raise AttributeError(f"module 'fastrl.metrics' has no attribute {name!r}")
