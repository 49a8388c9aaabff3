"""The clean table and the error records: identity and layout of what is stored, the Delta
table (locations, options, schema), the data-file writer, one commit per ingest, error-record
sinks and ledgers, compaction and replay. Nothing here knows about AWS events or HTTP."""
