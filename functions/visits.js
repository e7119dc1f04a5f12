// A visit counter every worker (and every replica, with REDIS_URL) shares: context.kv.incr is
// atomic in the store. Compare counter.js, whose module state counts per worker.
module.exports = async (event, context) => {
  const visits = await context.kv.incr('visits');
  return { visits };
};
