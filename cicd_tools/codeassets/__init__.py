"""Azure ML code assets: the AML-compatible content hash (hashVersion 202208) and its ignore rules."""
