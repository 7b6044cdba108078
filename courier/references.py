"""Arguments that name stored things (a software update, a file, a setting) are completed
with what the device needs when the command is created: version, size, sha256, the setting's
document. Links to the bytes are signed later, when the command is sent."""

from __future__ import annotations

from typing import Any

from courier.core.documents import Setting, SoftwareUpdate, StoredFile
from courier.errors import InvalidInput, NotFound
from courier.store import Store


def _missing(loc: str, what: str, value: object) -> InvalidInput:
    message = f"no {what} {value}"
    return InvalidInput(f"{loc}: {message}", errors=[{"loc": loc, "msg": message}])


async def resolve_args(
    store: Store, tenant: str, command: str, args: dict[str, Any]
) -> dict[str, Any]:
    """The args with the referenced records' facts added; 422 naming an unknown id."""
    if command == "software_update":
        update_id = args["software_update_id"]
        try:
            update = await store.get_document(SoftwareUpdate, tenant, update_id)
            package = await store.get_document(StoredFile, tenant, update.file_id)
        except NotFound:
            raise _missing("args.software_update_id", "software update", update_id) from None
        return {
            **args,
            "name": update.name,
            "version": update.version,
            "file_id": package.id,
            "file_name": package.name,
            "size": package.size,
            "sha256": package.sha256,
            # What the package installs on: the device refuses one that is not for it.
            **({"target": update.target} if update.target else {}),
        }
    if command == "lwm2m_file" and args.get("type") == "fileupload":
        try:
            stored = await store.get_document(StoredFile, tenant, args["file_id"])
        except NotFound:
            raise _missing("args.file_id", "file", args["file_id"]) from None
        return {**args, "file_name": stored.name, "size": stored.size, "sha256": stored.sha256}
    if command == "setting":
        setting_id = args["setting_id"]
        try:
            setting = await store.get_document(Setting, tenant, setting_id)
        except NotFound:
            raise _missing("args.setting_id", "setting", setting_id) from None
        return {**args, "name": setting.name, "document": setting.document}
    return args
