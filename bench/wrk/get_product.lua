-- GET /products/{id} over the product ids in ids.txt (one per line).
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/products/" .. ids[math.random(#ids)])
end
