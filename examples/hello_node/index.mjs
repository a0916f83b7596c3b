// A Node.js function (runtime nodejs, handler index.handler): an ES module, as Lambda's
// console writes it for Node 18 and later.
export const handler = async (event, context) => {
  const name = event?.name ?? 'world';
  console.log(`greeting ${name}`);
  return { message: `Hello, ${name}!`, requestId: context.awsRequestId };
};
