"""Tags from a lab's metadata, written into streamed copies of the files (`dicomflow upload --set-tag/--mapping`).

Rules say which tag gets which value. They come from `--set-tag KEYWORD=VALUE` (repeatable) and from a mapping
file the user writes, one rule per line::

    # tag-mapping: KEYWORD = template (blank lines and lines starting with # are ignored)
    PatientID = {sample_id}-{attempt}
    PatientName = {patient_name}
    AccessionNumber = {accession}
    StudyDescription = {assay} ({StudyDate})

KEYWORD is a DICOM keyword of pydicom's dictionary (`PatientID`, not `(0010,0020)`) whose value can be written
as text: not file meta (group 0002), pixel data, Specific Character Set, sequences or binary values. A keyword
appears once per source; `--set-tag` wins over the mapping file for the same keyword. Spaces around `=` and at
the ends of the template are dropped.

A template is text with `{name}` fields, as in Python's `str.format` but with bare names only (no `{a.b}`,
`{a[0]}`, `{a!r}`, `{a:>5}`; `{{` and `}}` are literal braces). A name is looked up, first match wins, in:
`sample_id` and `attempt` (from `--sample-id` and `--attempt`), the top-level fields of the sample's metadata
(the JSON object `--metadata-url` answers; text, numbers and booleans), then the file's own tags by keyword
(`{StudyDate}`; a file lacking one is refused). The rendered value must be valid for the tag's VR (pydicom's
validators: a DA is YYYYMMDD, a US a whole number up to 65535, `\\` separates multiple values); setting
SOPInstanceUID or SOPClassUID also sets its file meta twin.

Modules: `template` (the template language), `rules` (rules, files, VR checks), `rewrite` (the streamed copies),
`deflated` (copies of deflated files), `report` (verify and dry-run listings), `options` (the command line options
and the run's plan).
"""
