// Lambda's response streaming API, as AWS's examples write it
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';

export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  // the mode: the event's, or over the web route the last part of the path
  const mode = event.mode ?? event.rawPath?.split('/').pop();
  if (mode === 'web') {
    const metadata = { statusCode: 201, headers: { 'X-Kind': 'streamified' } };
    responseStream = awslambda.HttpResponseStream.from(responseStream, metadata);
  } else if (mode === 'type') {
    responseStream.setContentType('text/plain');
  }
  if (mode === 'pipeline') {
    await pipeline(Readable.from(['one ', 'two ', context.awsRequestId]), responseStream);
    return;
  }
  responseStream.write('Hello, ');
  await new Promise((resolve) => setTimeout(resolve, 10));
  responseStream.write('world!');
  if (mode === 'fail') throw new TypeError('broke mid-stream');
  responseStream.end();
});
