// CommonJS form. Module-level state lives as long as this version stays warm in a worker:
// each worker has its own copy, and a new version starts from zero.
let calls = 0;

module.exports = (event, context) => {
  calls += 1;
  console.log(`call ${calls} of version ${context.version}`);
  return { calls, requestId: context.requestId };
};
