"""Per-key state of a worker's tables: what a customer's holds is defined in
``cxpulse.schemas.scoring``, a touchpoint instance's in ``health`` (with its compact,
versioned changelog record); how they are written to the changelog is here: ``customer``
(the compact, versioned customer codec), ``health``,
``table_codec`` (how Faust tables use such a codec), ``store`` (the customer table on
local disk) and ``changelog`` (a checkpoint's records sent in producer batches)."""
