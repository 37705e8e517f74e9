"""The device model (model card): :class:`DeviceModel`, read and written as JSON against the schema
in ``devmodel/schemas/``; sampling from it in :mod:`devmodel.model.sample`."""

from devmodel.model.card import DeviceModel, ModelCardError

__all__ = ["DeviceModel", "ModelCardError"]
