"""Raw bill files: stored under VAR_DIR/bills/<sha256>, from a download or a manual upload.

The file is streamed to disk while it is hashed (never held in memory). A file is one BillFile
per account and day (unique on account, day, sha256): the same bill downloaded again or uploaded
by hand is recognised and never processed twice, while the same bytes given for another account
or day (an empty statement, a file uploaded for the wrong day) are a bill of their own.
"""

import hashlib
import os
import tempfile
from datetime import date
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.channels.models import ChannelAccount
from apps.channels.services import adapter_for
from apps.reconciliation.models import BillFile, BillFileSource

CHUNK = 1 << 20


def bills_dir() -> Path:
    path = Path(getattr(settings, "PAYSYS_RECON_BILLS_DIR", settings.VAR_DIR / "bills"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def bill_path(bill: BillFile) -> Path:
    return bills_dir() / bill.sha256


class _HashingWriter:
    """A file-like sink that writes to a temporary file and hashes what passes through."""

    def __init__(self, directory: Path):
        self.fd, self.name = tempfile.mkstemp(dir=directory, prefix=".incoming-")
        self.file = os.fdopen(self.fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _store(
    *, account: ChannelAccount, day: date, file_name: str, sink: _HashingWriter, source: str, by: str
) -> tuple[BillFile, bool]:
    """Moves the received file into place; (bill, created). An identical file returns the first."""
    sink.close()
    digest = sink.hash.hexdigest()
    existing = BillFile.objects.filter(account=account, day=day, sha256=digest).first()
    if existing is not None:
        os.unlink(sink.name)
        return existing, False
    os.replace(sink.name, bills_dir() / digest)
    try:
        with transaction.atomic():
            bill = BillFile.objects.create(
                account=account, day=day, file_name=file_name[:255], sha256=digest, size=sink.size,
                source=source, uploaded_by=by,
            )  # fmt: skip
    except IntegrityError:  # a concurrent store of the same file won
        return BillFile.objects.get(account=account, day=day, sha256=digest), False
    return bill, True


def bill_download(*, account: ChannelAccount, day: date) -> tuple[BillFile, bool]:
    """Downloads the account's bill of `day` from its provider and stores it (BillNotReady et al. raise)."""
    sink = _HashingWriter(bills_dir())
    try:
        name = adapter_for(account).download_bill(bill_date=day, dest=sink)
    except BaseException:
        sink.close()
        os.unlink(sink.name)
        raise
    return _store(account=account, day=day, file_name=name, sink=sink, source=BillFileSource.DOWNLOAD, by="system")


def bill_upload(
    *, account: ChannelAccount, day: date, file_name: str, content: BinaryIO, by: str
) -> tuple[BillFile, bool]:
    """Stores a bill file finance uploaded by hand (the console), streamed in chunks."""
    sink = _HashingWriter(bills_dir())
    try:
        while chunk := content.read(CHUNK):
            sink.write(chunk)
    except BaseException:
        sink.close()
        os.unlink(sink.name)
        raise
    return _store(account=account, day=day, file_name=file_name, sink=sink, source=BillFileSource.UPLOAD, by=by)
