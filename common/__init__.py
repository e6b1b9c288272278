"""Code shared by every dicomflow service: settings, logging, schemas, DICOM helpers and the CLI."""
