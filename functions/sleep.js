// An async function: awaits a timer, then answers. Try /sleep?ms=250
async (event, context) => {
  const ms = Math.min(Number(event.query.ms) || 100, context.getRemainingTimeInMillis() - 50);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return { slept: ms, remainingMs: context.getRemainingTimeInMillis() };
};
