-- POST /orders, one unit of a product picked at random from ids.txt (one id: a hot product).
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
local token = os.getenv("BENCH_TOKEN")
math.randomseed(os.time())
request = function()
  local body = '{"items":[{"productId":"' .. ids[math.random(#ids)] .. '","quantity":1}],"paymentMethod":"pm_success"}'
  return wrk.format("POST", "/orders", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
