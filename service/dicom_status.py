"""DICOM status codes we send or interpret, named (PS3.4 Annex B.2.3, PS3.7 Annex C)."""

from enum import IntEnum


class StoreStatus(IntEnum):
    SUCCESS = 0x0000
    REFUSED_NOT_AUTHORIZED = 0x0124  # PS3.7 C.4.2
    OUT_OF_RESOURCES = 0xA700  # PS3.4 B.2.3
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    WARNING_COERCION = 0xB000
    WARNING_ELEMENTS_DISCARDED = 0xB006
    WARNING_DOES_NOT_MATCH_SOP_CLASS = 0xB007


SUCCESS_OR_WARNING = {
    StoreStatus.SUCCESS,
    StoreStatus.WARNING_COERCION,
    StoreStatus.WARNING_ELEMENTS_DISCARDED,
    StoreStatus.WARNING_DOES_NOT_MATCH_SOP_CLASS,
}


def describe(status: int) -> str:
    try:
        return f"0x{status:04X} {StoreStatus(status).name.lower().replace('_', ' ')}"
    except ValueError:
        return f"0x{status:04X}"
