"""Per-key state of a worker's tables: what it holds is defined in ``cxpulse.schemas.scoring``
(customers) and ``cxpulse.schemas.alerts`` (touchpoint instances); how it is written to the
changelog is here: ``customer`` (the compact, versioned customer codec),
``table_codec`` (how Faust tables use such a codec), ``store`` (the customer table on
local disk) and ``changelog`` (a checkpoint's records sent in producer batches)."""
