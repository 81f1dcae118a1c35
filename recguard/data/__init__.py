"""Interaction data: the model, loaders, splits, target selection and the prepared-data cache."""

from recguard.data.interactions import Interactions

__all__ = ["Interactions"]
