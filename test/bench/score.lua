-- wrk: GET /score/<random account id in 1..N> (N from the environment, BENCH_N)
local n = tonumber(os.getenv("BENCH_N") or "10000")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  return wrk.format("GET", "/score/" .. math.random(1, n))
end
