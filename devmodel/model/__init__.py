"""The device model (model card): :class:`DeviceModel`, read and written as JSON against the schema
in ``devmodel/schemas/`` and each technology's section schema; sampling in :mod:`devmodel.model.sample`
(NumPy) and :mod:`devmodel.model.noise` (torch)."""

from devmodel.model.card import DeviceModel, ModelCardError

__all__ = ["DeviceModel", "ModelCardError"]
