"""Static files for `make demo`: served as production serves them."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Hashed, compressed names even with DEBUG on (Django's manifest storage hands out plain
    names in debug), so WhiteNoise can let browsers cache them for a year."""

    def url(self, name, force=False):
        return super().url(name, force=True)
