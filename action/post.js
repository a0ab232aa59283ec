'use strict';
require('./kura.js').run('post');
