-- wrk: the summary and the whole latency histogram (microseconds) as one JSON line.
-- wrk 4.1 has already added synthetic samples to `latency` when done() runs (its
-- coordinated-omission correction, stats_correct in wrk.c); benchmarks/granian.py
-- takes them out again and checks that what is left is one sample per request.
done = function(summary, latency, requests)
  local e = summary.errors
  local parts = {}
  for i = 1, #latency do
    local value, count = latency(i)
    parts[#parts + 1] = string.format("[%d,%d]", value, count)
  end
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"histogram":[%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ",")))
end
