-- ARGV: a deduplication id. Returns the id of the job holding its key, or nil.
return (dedup_holder(base .. 'dedup:' .. ARGV[1]))
