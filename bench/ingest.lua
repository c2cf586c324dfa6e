-- wrk script: posts the same 1k-event batch over and over (body from $BODY_FILE).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY_FILE") or "bench/ingest-body.json", "rb"))
wrk.body = f:read("*a")
f:close()
