"""The data path of a worker, one step per module.

A partition's batch goes through:

    decode (validate once, at the boundary)  ->  route (repartition: by customer, by
    touchpoint instance)  ->  score (the pure core on trusted records)  ->  rows  ->
    sink  ->  checkpoint

``records`` is what moves between the steps inside the cluster: validated events as
compact, versioned msgpack records that no step validates again. A stateful step reads
its topic in ``takes`` and makes what a take changed durable at its ``checkpoint``: rows,
then states, then offsets; ``rows`` are the tuples it hands the sink.
"""
