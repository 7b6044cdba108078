"""The file store: uploads and downloads, on disk, and the signed links devices use."""
