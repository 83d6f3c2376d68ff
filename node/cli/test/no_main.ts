// A module without `main`: what loadSimMain must refuse with a clear message.
export const notMain = 1;
