(event, context) => {
  return { message: 'it works!', status: 'ok' };
};
